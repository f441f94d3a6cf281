"""The meta plugin: which delegates a pod gets, their record on disk, and ADD/DEL/CHECK/GC/STATUS over them."""
