/* placeholder: being written */
typedef int yci_placeholder_observer_t;
