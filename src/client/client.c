/* placeholder: being written */
typedef int yci_placeholder_client_t;
