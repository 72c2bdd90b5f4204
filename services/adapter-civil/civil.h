/*  civil.h — the civil-affairs (民政) adapter's mapping: dispatch orders
    become assistance cases in the civil-affairs case system, its events
    become replies. Separate from main.c so the unit test
    (tests/unit/test_adapter_civil.c) can test the pure parts.

    Personal data. Civil-affairs staff call the person back (a visit is
    arranged, a subsidy explained), so the case carries a callback number;
    it never carries the reporter's name. The catalogue marks civil
    `masks_personal_data: false`, so the dispatcher's order has the
    reporter's real phone and name; this mapping passes the phone as
    `callback.phone` and drops the name, and also masks the name and every
    mobile number in the description (cb_mask_name, cb_mask_text): the
    callback number travels in its own field, once. A phone that arrives
    masked (a catalogue that masks civil) is not a number anyone can call:
    the case then says `"callback": {"available": false, "reason":
    "masked"}`, and without a reporter `"reason": "anonymous"`.

    The civil system's small API (docs/ADAPTERS.md has it with examples):

    Cases: POST CIVICBUS_DEPT_URL (default http://127.0.0.1:9103/cases)
        Idempotency-Key: <dispatch_id>
        Authorization: Bearer <CIVICBUS_DEPT_CREDENTIAL>   (when set)
        {"request_no": "<dispatch_id>", "attempt": 1, "ticket_no": "<ticket id>",
         "service_type": "SUBSISTENCE", "service_name": "最低生活保障",
         "category": "civil.assistance.subsistence", "request_type": "help",
         "lead": true,                     //  false: co-handling (协办)
         "urgent": false, "summary": "...",
         "callback": {"available": true, "phone": "13812345678"},
         "area": {"grid_code": "...", "community_code": "...", "street_code": "...",
                  "address": "...", "lat": 32.0, "lon": 118.7},   //  lat/lon when known
         "reported_at": "ISO 8601", "sign_by": "ISO 8601", "resolve_by": "ISO 8601",
         "attachments": ["https://..."]}

    Events: POST <adapter>/civil/v1/events
        Authorization: Bearer <CIVICBUS_DEPT_TOKEN>
        {"request_no": "<dispatch_id>", "event_id": "CE-1",
         "event": "ACCEPT" | "RETURN" | "EXTEND" | "SUSPEND" | "VISIT" | "COMPLETE",
         "remark": "...", "worker": "...", "extend_days": 5,
         "files": ["https://..."], "occurred_at": "ISO 8601" or milliseconds}
      event -> reply: ACCEPT sign (受理), RETURN return (退回; remark =
      reason, required), EXTEND extension (延期; extend_days 1..30 and
      remark required), SUSPEND suspend (中止; remark required), VISIT
      progress (走访 / 进展), COMPLETE resolve (办结; remark = the result,
      required). event_id makes repeats harmless. */

#ifndef CIVICBUS_ADAPTER_CIVIL_H
#define CIVICBUS_ADAPTER_CIVIL_H

#include "civicbus/adapter.h"

//  The mapping cb_adapter_main runs with.
extern const cb_adapter_mapping_t civil_mapping;

//  The loaded tables (opaque; civil_mapping.load makes one from the JSON
//  of deploy/config/adapters/civil.json, or built-in defaults).
typedef struct _civil_tables_t civil_tables_t;

//  The civil system's service type and its name for a catalogue category:
//  the table's entry for the exact code, else for its longest listed
//  prefix ("civil.elderly" for "civil.elderly.care"), else the default.
//  Never NULL.
const char *civil_service_type (const civil_tables_t *tables, const char *category,
                                const char **name);

#endif
