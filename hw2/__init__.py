"""Shared code for the HW2 answer: data, results, training helpers and rendering."""
