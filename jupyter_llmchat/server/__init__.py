"""The server wing: the Jupyter Server extension, its handlers and the chat service.

A frame comes in at `handlers`, is typed by `..protocol`, acted on by `service` (answers in
`answers`), sequenced and fanned out by the room bus (`..room_bus`), and answered by the model
backend (`..backends`); it leaves through each connection's bounded queue (`connection`).
"""
