"""Histories written as Nova Icehouse ... Queens wrote them, with the true hosts, and accuracy."""
