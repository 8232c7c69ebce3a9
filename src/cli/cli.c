/* placeholder: being written */
typedef int yci_placeholder_cli_t;
