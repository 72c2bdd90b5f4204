/*  urban.h — the urban-management (城管) adapter's mapping: dispatch orders
    become cases in the digital urban-management system (数字城管), its
    feedback calls become replies. Separate from main.c so the unit test
    (tests/unit/test_adapter_urban.c) can test the pure parts.

    The urban system's small API (docs/ADAPTERS.md has it with examples):

    Cases: POST CIVICBUS_DEPT_URL (default http://127.0.0.1:9102/cases)
        Idempotency-Key: <dispatch_id>
        Authorization: Bearer <CIVICBUS_DEPT_CREDENTIAL>   (when set)
        {"case_key": "<dispatch_id>", "attempt": 1,
         "case_no": "<ticket id>", "role": "main" | "assist",   //  主办 / 协办
         "gbt30428": {"type": "facility" | "event",             //  部件 / 事件
                      "type_name": "部件" | "事件",
                      "class_code": "01", "class_name": "公用设施",
                      "subclass_code": "0101", "subclass_name": "井盖破损"},
         "category": "urban.facility.public.manhole",
         "grid_code": "320105001001001",
         "grid_path": ["320105", "320105001", "320105001001", "320105001001001"],
         "location": {"lng": 118.73, "lat": 32.02, "address": "..."},  //  lng/lat when known
         "description": "...",          //  as the dispatcher sent it (urban: phones masked)
         "source": "app", "request_type": "report", "urgent": false,
         "reported_at": "ISO 8601", "sign_deadline": "ISO 8601", "handle_deadline": "ISO 8601",
         "photos": ["https://..."]}
      No reporter: the urban system works from the place and the photos,
      and the catalogue masks personal data for urban anyway.

    Feedback: POST <adapter>/urban/v1/feedback
        Authorization: Bearer <CIVICBUS_DEPT_TOKEN>
        {"case_key": "<dispatch_id>", "feedback_id": "FB-1",
         "action": "sign" | "return" | "delay" | "hang" | "progress" | "finish"
                   (or 签收 | 退回 | 延期 | 挂账 | 进展 | 办结),
         "opinion": "...", "handler": "...", "delay_days": 3,
         "images": ["https://..."], "time": "ISO 8601" or milliseconds}
      action -> reply: sign 签收, return 退回 (opinion = reason, required),
      delay 延期 (delay_days 1..60 and opinion required), hang 挂账 (opinion
      required), progress 进展, finish 办结 (opinion = the result, required).
      feedback_id is the urban system's own id for the call (repeats are
      harmless). */

#ifndef CIVICBUS_ADAPTER_URBAN_H
#define CIVICBUS_ADAPTER_URBAN_H

#include "civicbus/adapter.h"

//  The mapping cb_adapter_main runs with.
extern const cb_adapter_mapping_t urban_mapping;

//  The loaded tables (opaque; urban_mapping.load makes one from the JSON
//  of deploy/config/adapters/urban.json, or built-in defaults).
typedef struct _urban_tables_t urban_tables_t;

//  One GB/T 30428 classification, as the urban system gets it.
typedef struct {
    const char *type;           //  "facility" (部件) or "event" (事件)
    const char *class_code;     //  "01"
    const char *class_name;     //  "公用设施"
    const char *subclass_code;  //  "0101"
    const char *subclass_name;  //  "井盖破损"
} urban_class_t;

//  The classification for a catalogue category: its entry in the table's
//  `categories`, else the table's `default` (a co-handled order of another
//  department's category, such as a night-noise report, lands there).
//  Never fails: fills *out with pointers into the tables.
void urban_class_of (const urban_tables_t *tables, const char *category, urban_class_t *out);

#endif
