"""High availability: several gateways share one state store and one of them owns it.

`larval.ha.election` elects the owner in etcd and fences it, on its own monotonic clock,
before etcd could give ownership to another.
"""
