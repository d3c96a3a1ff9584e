"""xbctl: inspect and steer the Xen memory balloon of domains, sysctl-style."""

__version__ = "0.1.0"
