"""The proof suite: crash matrix, server and node loss, bad input, security, and the reliability report."""
