/* placeholder: being written */
typedef int yci_placeholder_git_t;
