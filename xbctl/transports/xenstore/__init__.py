"""The Xenstore transport: the wire (wire.py), the node model (model.py), the xl-compatible writes
(xl.py) and the transport that joins them (transport.py). Nothing is imported here: each command
loads what it uses."""
