// Afterimage module
