/* placeholder: being written */
typedef int yci_placeholder_sqlite_t;
