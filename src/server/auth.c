/* placeholder: being written */
typedef int yci_placeholder_auth_t;
