"""How an email gets out exactly once: the ledger, the send loop, the relay, the reconciler.

The database, not the broker, is the record of what is owed:

1. Publishing stores the article marked "awaiting fan-out" (`Article.fanned_out_at` NULL) in
   the same transaction; its fan-out task is queued only after that commit.
2. Fan-out (`fanout`) writes one `pending` delivery per matching reader, page by page, and
   commits each page with a cursor before any send task is queued; a fan-out that dies is
   resumed from its cursor.
3. Send tasks (`batches`) claim the next pending rows of an article (or the next queued
   readers of a digest run) under a lease that a heartbeat thread renews for as long as the
   task lives (`lease`), send them over one SMTP connection (`loop`), and commit each
   outcome before the next message goes out.
4. The reconciler (`reconcile`, beat about every 30 s) queues whatever the database says is
   owed and nobody holds: articles never fanned out, pending rows without a live lease whose
   retry time has come, digest readers whose lease ran out. A broker that lost its queue,
   a worker killed mid-batch, a publish while the broker was down: all end up sent.

What is guaranteed, and the one window SMTP leaves:

- A reader is never sent the same article twice by this service's own doing: a row is
  sent only by the task holding its lease, and its outcome is committed right after the
  relay's reply, before the next message.
- A reader is never charged for the relay's trouble: a connection that cannot be opened or
  drops before the message's data was sent leaves the row pending, with no attempt counted.
- Duplicates are possible in exactly two cases, both where the relay accepted a message but
  we could not record it: the worker died between the relay's "250" and our commit (a few
  milliseconds per message), or the connection dropped after the message's data was sent
  and before the relay's reply (the acknowledgement was lost). The row then stays pending
  and is sent again: SMTP gives no way to ask the relay whether it kept the message, and a
  lost email is worse than a second copy. Such drops are retried after a backoff of their
  own and count towards the retry horizon (a message that always kills the connection must
  not stall its batch for ever), but never as a soft bounce of the reader.
- A lease is renewed by its holder's heartbeat, not by the send loop, so a relay that is
  slow to answer never lets a second worker take over rows that are still being sent; a
  holder whose heartbeat cannot reach the database stops before its lease could run out.
"""
