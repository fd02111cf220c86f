"""Turning run directories into comparison tables, plots and Markdown/HTML reports."""
