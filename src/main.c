/*
 * main — the yci command. Everything happens in cli/ (cli/cli.h).
 */
#include "cli/cli.h"
#include "lib/banned.h"

int main(int argc, char **argv)
{
    return cli_main(argc, argv);
}
