"""The manager role: the call tracker (WorkID -> WorkState, results kept until consumed),
the storage index (which worker holds a sector's files), and the requester API."""
