// PQ module
