/* placeholder: being written */
typedef int yci_placeholder_runner_t;
