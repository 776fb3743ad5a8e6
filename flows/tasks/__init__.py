"""Network configuration task orders (CATALOGUE A.5): the bulk path of wireless parameter tasks."""
