/* placeholder: being written */
typedef int yci_placeholder_api_t;
