/* placeholder: being written */
typedef int yci_placeholder_pipeline_t;
