"""Reporting: run directories, JSON results and figures (all the I/O and plotting; the algorithms return
plain results). One module per concern."""
