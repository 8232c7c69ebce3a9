/*
 * banned — functions that must not be used, included last in every .c file.
 *
 * Each is unsafe (no bounds, hidden static state, undefined on bad input);
 * use the alternative named in the message.
 */
#ifndef YCI_LIB_BANNED_H
#define YCI_LIB_BANNED_H

#define BANNED(func) sorry_##func##_is_a_banned_function

#undef strcpy
#define strcpy(x, y) BANNED(strcpy) /* use buf or snprintf */
#undef strcat
#define strcat(x, y) BANNED(strcat)
#undef sprintf
#define sprintf(...) BANNED(sprintf) /* use snprintf or buf_addf */
#undef vsprintf
#define vsprintf(...) BANNED(vsprintf)
#undef strtok
#define strtok(x, y) BANNED(strtok) /* use strtok_r */
#undef atoi
#define atoi(x) BANNED(atoi) /* use parse_int */
#undef atol
#define atol(x) BANNED(atol)
#undef gets
#define gets(x) BANNED(gets)
#undef gmtime
#define gmtime(x) BANNED(gmtime) /* use gmtime_r */
#undef localtime
#define localtime(x) BANNED(localtime) /* use localtime_r */

#endif
