"""Reviewing a dedup run: the page, and the decisions a review leaves."""
