/* ds-backend-cpu.c: placeholder until implemented. */
typedef int ds_placeholder_ds_backend_cpu;
