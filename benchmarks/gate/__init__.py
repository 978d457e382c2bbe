"""Which label-free comparison tells an undertrained challenger from a retrained one."""
