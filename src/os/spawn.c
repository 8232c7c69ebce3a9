/* placeholder: being written */
typedef int yci_placeholder_spawn_t;
