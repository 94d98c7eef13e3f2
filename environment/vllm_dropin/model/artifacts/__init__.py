"""Model artifacts from `artifact_uri`: object stores, hub mirrors, archives, local folders.

`uri` parses (pure), `stores` lists and fetches one file of each kind of store, `transfer`
fetches a listing in parallel into a staging folder that is renamed when whole, `fetch` ties
them to the settings and the cache, `cache_lock` keeps replicas sharing a cache from writing it at
once. Credentials live only in the store clients.
"""
