import json
import time

import aiohttp
import httpx
import uvloop

URL="http://127.0.0.1:18000/v1/chat/completions"
BODY=json.dumps({"model":"fake-model","messages":[{"role":"user","content":"hi"}]}).encode()
SB=json.dumps({"model":"fake-model","stream":True,"messages":[{"role":"user","content":"hi"}]}).encode()
N=3000
async def hx(stream):
    c=httpx.AsyncClient(limits=httpx.Limits(max_connections=100))
    t=time.perf_counter()
    for i in range(N):
        r=await c.send(c.build_request("POST",URL,content=SB if stream else BODY,headers={"content-type":"application/json"}),stream=True)
        async for ch in r.aiter_raw(): pass
        await r.aclose()
    return (time.perf_counter()-t)/N*1e6
async def ah(stream):
    s=aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    t=time.perf_counter()
    for i in range(N):
        async with s.post(URL,data=SB if stream else BODY,headers={"content-type":"application/json"}) as r:
            async for ch in r.content.iter_any(): pass
    await s.close()
    return (time.perf_counter()-t)/N*1e6
async def main():
    for f in (hx,ah):
        for st in (False,True):
            print(f.__name__, "stream" if st else "plain", f"{await f(st):.0f} us/req")
uvloop.run(main())
