"""Running CNI plugins: the native plugin contract, entry-point lookup, binary exec and chains."""
