"""What Nova left in a cell database: its tables, what a cell has, nova.conf and cell mappings."""
