/* placeholder: being written */
typedef int yci_placeholder_exec_t;
