"""One typed settings object for the whole product.

Values come from (highest first): explicit arguments, environment variables with the prefix
``VAE_ANOMALY_`` (nested with ``__``, e.g. ``VAE_ANOMALY_TRAINING__MAX_EPOCHS=20``), defaults.
The tracking URI also honours the standard ``MLFLOW_TRACKING_URI``.

Where state goes by default (the MLflow store ``mlruns/``, the outputs ``data/scored/``, the
sample files ``data/sample/``) is the *home*: ``$VAE_ANOMALY_HOME`` when set, else the working
directory (:func:`home`); never where the code is installed. In a checkout, ``make run`` runs
from the repository root, so the repository is the home.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# where the code lives (a checkout, or site-packages): for the model's code paths only, never
# for data, stores or outputs (those go under home())
PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOME_VARIABLE = "VAE_ANOMALY_HOME"
LABEL_COLUMNS = ("label", "anomaly_kind", "anomaly_column")


def home() -> Path:
    """The directory that holds the product's state by default: ``$VAE_ANOMALY_HOME`` when set,
    else the current working directory (read at each call: never the install location)."""
    value = os.environ.get(HOME_VARIABLE, "").strip()
    return Path(value).expanduser().resolve() if value else Path.cwd().resolve()


def sample_path(name: str) -> Path:
    """A sample file of the home (``data/sample/<name>``; ``vae-anomaly demo`` writes them)."""
    return home() / "data" / "sample" / name


def _default_output_root() -> Path:
    return home() / "data" / "scored"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DataSettings(_Section):
    """Which columns are what."""

    id_columns: tuple[str, ...] = Field(
        default=(), description="passed through untouched, never modeled (auto-detected if empty)"
    )
    ignore_columns: tuple[str, ...] = Field(
        default=LABEL_COLUMNS, description="dropped before modeling (labels kept for evaluation)"
    )
    categorical_columns: tuple[str, ...] | None = Field(
        default=None, description="forced categorical; default: non-numeric columns"
    )
    max_categories: int = Field(
        default=50, ge=2, description="most frequent categories kept per column"
    )
    id_like_unique_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="a text column with more distinct values than this share of rows is an id",
    )


class ModelSettings(_Section):
    """Architecture; empty hidden_dims / latent_dim 0 mean 'scale with the input width'."""

    hidden_dims: tuple[int, ...] = ()
    latent_dim: int = Field(default=0, ge=0)
    activation: Literal["relu", "gelu", "tanh", "leaky_relu", "silu"] = "gelu"
    dropout: float = Field(default=0.0, ge=0, lt=1)
    decoder_variance: Literal["fixed", "learned"] = Field(
        default="learned", description="fixed: unit variance; learned: one variance per feature"
    )
    min_variance: float = Field(default=1e-3, gt=0, description="floor of a learned variance")


# a share of the training rows (under half of them), or "auto": a rule chosen per table
ShareOrAuto = Annotated[float, Field(ge=0, lt=0.5)] | Literal["auto"]


class TrainingSettings(_Section):
    max_epochs: int = Field(default=100, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    beta: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        default="auto",
        description="weight of the KL term in the loss; auto: 0.5 for a table whose model "
        "columns are all categorical, else 0.1",
    )
    trim_fraction: ShareOrAuto = Field(
        default="auto",
        description="share of the training rows the model scores highest halfway through "
        "training, dropped for the second half (0: none; e.g. the expected anomaly share); "
        "auto: the rows whose score is far out (beyond Q3 + 3 IQR of the training rows' "
        "scores), 10% at most",
    )
    downweight_fraction: ShareOrAuto = Field(
        default="auto",
        description="share of each batch's rows with the highest loss whose pull on the model "
        "is bounded (weight (cut - median) / (loss - median)), from downweight_epoch on: "
        "anomalies in the training data pull no harder than the ordinary worst-fitted rows "
        "(0: every row counts fully); auto: 0.1 for a table whose model columns are all "
        "categorical, else 0",
    )
    downweight_epoch: int = Field(
        default=10, ge=1, description="first epoch of the bounded influence"
    )
    patience: int = Field(
        default=8, ge=1, description="epochs without validation gain before stopping"
    )
    average_epochs: Annotated[float, Field(ge=0)] | Literal["auto"] = Field(
        default="auto",
        description="the weights validated and kept are a moving average of the optimiser's "
        "iterates over up to this many epochs (reached 9x as many epochs after the start or "
        "the trimming), which the jitter of the last steps does not move (0: the last "
        "iterate); auto: 5 for a table whose model columns are all categorical, else 0",
    )
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 42
    device: str = Field(default="auto", description="auto, cpu or cuda")
    cpu_threads: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        default="auto",
        description="torch CPU threads in training (0 = all); auto: 2 (or the one core there "
        "is) for an encoded table of 64 features or more, whose matrix products are worth "
        "splitting, else 1",
    )
    min_rows: int = Field(default=20, ge=2, description="fewest training rows accepted")
    progress_bar: bool = False


class ThresholdSettings(_Section):
    """How training sets the model's threshold (see :func:`pipeline.threshold.fit_threshold`):
    by ``contamination`` unless ``target_fpr`` or ``fixed_score`` (at most one) is set."""

    contamination: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="expected share of anomalies: the threshold is the 1 - contamination "
        "quantile of the validation scores (about that share of rows like the training "
        "data is flagged)",
    )
    target_fpr: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description="instead: the lowest threshold with at most this share of the validation "
        "rows (held out from training, taken as normal) above it",
    )
    fixed_score: float | None = Field(
        default=None, description="instead: this anomaly score is the threshold"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> ThresholdSettings:
        if self.target_fpr is not None and self.fixed_score is not None:
            raise ValueError(
                "set at most one of threshold.target_fpr and threshold.fixed_score "
                f"(got {self.target_fpr} and {self.fixed_score})"
            )
        return self

    @property
    def rule(self) -> str:
        """The rule in words: ``contamination 0.01``, ``target FPR 0.005``, ``fixed score 3``."""
        if self.fixed_score is not None:
            return f"fixed score {self.fixed_score:g}"
        if self.target_fpr is not None:
            return f"target FPR {self.target_fpr:g} on the validation split"
        return f"contamination {self.contamination:g}"


class ScoringSettings(_Section):
    score: Literal[
        "auto", "log_max", "elbo", "scaled_elbo", "tail_max", "max", "standardized", "sum"
    ] = Field(
        default="auto",
        description="auto: scaled_elbo for a table whose model columns are all categorical, "
        "else log_max; log_max: max(z(log recon), kl_weight * z(log KL)); elbo: the negative "
        "ELBO, recon / 2 + kl_weight * KL, categorical columns by their likelihood; "
        "scaled_elbo: recon / 2 + kl_weight * KL, each encoded feature's squared error divided "
        "by its training variance (a one-hot indicator's q(1 - q), floored at 0.001); tail_max: "
        "the larger tail surprise (against the training records) of the negative ELBO and of "
        "Pearson's chi-square of the categorical columns; max: "
        "max(z(recon), kl_weight * z(KL)); standardized: z(recon) + kl_weight * z(KL); z with "
        "training-record statistics; sum: raw recon + KL",
    )
    kl_weight: float = Field(default=1.0, ge=0, description="weight of the standardised KL term")
    mc_samples: int = Field(
        default=0,
        ge=0,
        description="0 = deterministic (latent mean); n > 0 averages the reconstruction over n "
        "posterior samples. The score statistics and the threshold are fitted deterministically, "
        "so sampled scores run higher (most with tail_max, whose chi-square averages 1/p)",
    )
    batch_rows: int = Field(default=16384, ge=1, description="rows per inference batch")
    chunk_rows: int = Field(
        default=262_144,
        ge=1,
        description="rows read, scored and written at a time when scoring a file: memory is "
        "bounded by the chunk, not by the file",
    )
    top_reasons: int = Field(
        default=3, ge=1, description="most columns named in a flagged row's reasons"
    )
    threshold: float | None = Field(
        default=None,
        description="a score cut-off for this run, instead of the model's threshold "
        "(rows scoring above it are flagged)",
    )
    scored_input_columns: bool = Field(
        default=False,
        description="also write every input column, as read, into scored.parquet (flagged.csv "
        "always has them)",
    )
    output_root: Path = Field(
        default_factory=_default_output_root,
        description="root of the output folders (default: <home>/data/scored)",
    )
    executor: Literal["sequential", "dask"] = Field(
        default="sequential",
        description="sequential: files one after another in the flow's process; "
        "dask: files fanned out to a Dask cluster (prefect-dask)",
    )
    dask_address: str | None = Field(
        default=None,
        description="scheduler of an existing Dask cluster (tcp://host:8786); "
        "default with executor=dask: a local cluster started for the run",
    )
    dask_workers: int = Field(default=2, ge=1, description="workers of a local Dask cluster")
    dask_threads_per_worker: int = Field(
        default=1, ge=1, description="threads per worker of a local Dask cluster"
    )
    dask_processes: bool = Field(
        default=True, description="local Dask cluster: workers in processes (False: threads)"
    )
    io_timeout_seconds: float = Field(
        default=300, gt=0, description="time limit of one MLflow call or input listing"
    )
    io_retries: int = Field(
        default=3, ge=0, description="retries of I/O tasks after a transient error"
    )
    file_timeout_seconds: float = Field(
        default=3600, gt=0, description="time limit of reading, scoring and writing one file"
    )
    file_retries: int = Field(
        default=2, ge=0, description="retries of a file after a transient error (I/O, lock)"
    )
    lock_timeout_seconds: float = Field(
        default=600,
        ge=0,
        description="how long to wait for another run that is scoring a file of the same name",
    )

    @field_validator("dask_address")
    @classmethod
    def _no_blank_address(cls, value: str | None) -> str | None:
        return value or None


class TrackingSettings(_Section):
    uri: str | None = Field(
        default=None, description="default: MLFLOW_TRACKING_URI, else sqlite in <home>/mlruns"
    )
    experiment: str = "vae-anomaly"
    registered_model: str = "vae-anomaly"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"
    resolve_timeout_seconds: float = Field(
        default=60,
        gt=0,
        description="total time to resolve an alias at the tracking server, retries included "
        "(an unreachable server fails after this long, with what to check)",
    )

    @field_validator("uri")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        return value or None

    def resolved_uri(self) -> str:
        """An absolute tracking URI (a relative sqlite path would depend on the working dir)."""
        uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            relative = uri.removeprefix("sqlite:///")
            uri = "sqlite:///" + str(Path(relative).resolve())
        return uri


_CREDENTIALS = re.compile(r"//[^/\s]*@")
# a query parameter: ?name=value, &name=value or ;name=value (the value up to & ; or whitespace)
_PARAMETER = re.compile(r"([?&;])([\w.-]+)=([^&;\s'\"]*)")
# a parameter names a secret when one of its words (split at _ . - and at camelCase humps) is one
# of these, or ends with one of the long ones (apikey, accesstoken, awsaccesskeyid): password=,
# api_key=, X-Amz-Signature=, accessToken=, sig= are masked; keyword=, design=, monkey= are not
_SECRET_WORDS = frozenset(
    {"password", "passwd", "pwd", "pass", "secret", "token", "key", "keyid", "credential"}
    | {"credentials", "signature", "sig", "apikey", "passphrase", "auth"}
)
_SECRET_SUFFIXES = (
    *("password", "passwd", "secret", "token", "apikey", "keyid"),
    *("accesskey", "sessionkey", "privatekey", "secretkey", "accountkey"),
)
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def _names_a_secret(name: str) -> bool:
    words = [w.lower() for w in _WORD.findall(name)]  # _ . - belong to no word
    joined = re.sub(r"[_.-]", "", name).lower()
    return any(w in _SECRET_WORDS for w in words) or joined.endswith(_SECRET_SUFFIXES)


def _mask_parameter(match: re.Match[str]) -> str:
    sep, name, value = match.groups()
    return f"{sep}{name}={'***' if _names_a_secret(name) else value}"


def redact(text: str) -> str:
    """Remove ``user:password@`` (or a bare ``token@``) from every URL in ``text``, and the
    values of query parameters that name a secret (``password=``, ``token=``, ``api_key=``,
    ``accessToken=``; the parameter's name is kept so the message still says what was wrong)."""
    return _PARAMETER.sub(_mask_parameter, _CREDENTIALS.sub("//***@", text))


def default_tracking_uri(root: Path | None = None) -> str:
    """``sqlite:///<home>/mlruns/mlflow.db`` as an absolute path (``root``: instead of home)."""
    return f"sqlite:///{((root or home()) / 'mlruns' / 'mlflow.db').resolve()}"


class Settings(BaseSettings):
    """All settings of the product, grouped by concern."""

    model_config = SettingsConfigDict(
        env_prefix="VAE_ANOMALY_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    threshold: ThresholdSettings = ThresholdSettings()
    # a factory: the output root's default is read from the home when settings are built
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    tracking: TrackingSettings = TrackingSettings()

    def with_overrides(self, **sections: dict[str, Any]) -> Settings:
        """A copy with some fields of some sections replaced (``training={"max_epochs": 5}``)."""
        data = self.model_dump()
        for section, values in sections.items():
            if section not in data:
                raise ValueError(f"unknown settings section {section!r}")
            data[section].update({k: v for k, v in values.items() if v is not None})
        return Settings.model_validate(data)

    def public_dump(self) -> dict[str, dict[str, Any]]:
        """All settings as JSON values, with credentials removed from the tracking URI."""
        data = self.model_dump(mode="json")
        if data["tracking"].get("uri"):
            data["tracking"]["uri"] = redact(data["tracking"]["uri"])
        return data

    def flat_params(self) -> dict[str, str]:
        """Every setting as ``section.field -> str`` (for MLflow params)."""
        flat: dict[str, str] = {}
        for section, values in self.public_dump().items():
            for key, value in values.items():
                flat[f"{section}.{key}"] = str(value)
        return flat
