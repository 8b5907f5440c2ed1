"""IPsec for the PMIPv6 signalling (issue 11 item 1): strongSwan configuration, the domain CA, the
nftables rules that make ``require_ipsec`` hold, and the start-up check of those rules.

Tooling and shells only: nothing here is imported by the sans-IO cores (docs/security.md).
"""
