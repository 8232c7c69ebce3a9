/* placeholder: being written */
typedef int yci_placeholder_sched_t;
