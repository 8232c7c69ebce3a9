/* placeholder: being written */
typedef int yci_placeholder_logstore_t;
