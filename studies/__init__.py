"""The studies (`python main.py experiment ...`) and the cells' records and plots."""
