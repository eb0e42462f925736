"""Netlink plumbing: raw sockets, a TLV walker and the ctnetlink codec."""
