"""larval: IPsec key management and a userspace IPsec stack.

The stack holds the SADB, the SPD and ESP, and is reached only through PF_KEY v2
messages with the illumos extensions (extended REGISTER, extended and inverse ACQUIRE).
"""

__version__ = "0.1.0"
