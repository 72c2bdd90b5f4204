/*  mask.h — masking personal data (DESIGN.md principle 6) and the small
    UTF-8 helpers it needs.

    A reporter's name and phone are stored once, in the ticket; everywhere
    else (events, logs, payloads for departments that need not know, API
    answers for roles that may not see them) they appear masked:
    13812345678 -> "138****5678", 张三 -> "张*". Every function writes at most
    `cap` bytes including the NUL terminator, never cuts a UTF-8 character in
    half, and writes "" for a NULL input. Output of cb_mask_name and
    cb_mask_phone is always valid UTF-8, whatever the input. */

#ifndef CIVICBUS_MASK_H
#define CIVICBUS_MASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Masks a phone number. Separators ('+', '-', ' ', '(', ')', '.') stay in
//  place; every other character is a "symbol". With 11 symbols (a mainland
//  mobile, or an area code and landline) the first 3 and last 4 stay:
//  "13812345678" -> "138****5678", "138-1234-5678" -> "138-****-5678". A
//  mobile behind the country code 86 is treated the same: "+86 13812345678"
//  -> "+86 138****5678". Any other length keeps a quarter at each end
//  (rounded down), so never more than half shows: "12345678" -> "12****78",
//  "1234" -> "1**4", "123" -> "***". Non-digit symbols never show.
void cb_mask_phone (const char *in, char *out, size_t cap);

//  Masks a person's name: the first character stays, every further
//  character (code point) becomes one '*': "张三" -> "张*", "欧阳娜娜" ->
//  "欧***", "Li Lei" -> "L*****". A one-character name becomes "*" (showing
//  it would show the whole name). An invalid UTF-8 byte counts as one
//  character and never shows.
void cb_mask_name (const char *in, char *out, size_t cap);

//  Copies free text (logs, event notes, descriptions), masking every
//  mainland mobile number in it: 11 digits starting 13..19, written
//  together or as 3-4-4 with one '-' or ' ' between the groups, and not
//  part of a longer digit run. The middle four digits become '*':
//  "请回电13812345678谢谢" -> "请回电138****5678谢谢". Other bytes are
//  copied as they are.
void cb_mask_text (const char *in, char *out, size_t cap);

//  Decodes the UTF-8 character at `s` (at most `len` bytes available). Returns
//  its length (1..4) and sets *cp, or 0 when the bytes are not well-formed
//  UTF-8 (overlong, surrogate, above U+10FFFF, truncated).
size_t cb_utf8_decode (const char *s, size_t len, uint32_t *cp);

//  True when the `len` bytes at `s` are well-formed UTF-8. O(len).
bool cb_utf8_valid (const char *s, size_t len);

//  Number of code points in well-formed UTF-8 text of `len` bytes (an
//  invalid byte counts as one). O(len).
size_t cb_utf8_length (const char *s, size_t len);

#endif
