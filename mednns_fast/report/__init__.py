"""Reporting: run directories, JSON results, figures and the HTML report (all the I/O and plotting; the
algorithms return plain results). One module per concern."""
