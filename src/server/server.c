/* placeholder: being written */
typedef int yci_placeholder_server_t;
