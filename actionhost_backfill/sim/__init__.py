"""Histories written as Nova Kilo ... Queens wrote them, with the true hosts, and accuracy."""
