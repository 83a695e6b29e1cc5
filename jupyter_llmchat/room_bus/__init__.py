"""The room bus wing: who is in a room, each room's `seq`, its replay window and its history.

`bus.RoomBus` is the seam the service talks to. `memory_bus.MemoryRoomBus` keeps rooms
in this process (`rooms.Room`) with history in SQLite (`store.HistoryStore`);
`redis_bus.RedisRoomBus` shares rooms between servers through Redis (`redis_fanout`,
`redis_keys`). Importing this wing loads no Tornado handler.
"""
