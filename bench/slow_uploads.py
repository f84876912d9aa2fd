"""Slow uploads against a running gateway: N connections as the demo portal, each
sending one submission with a SIZE MiB attachment and withholding its last 200
bytes; prints what happened and the daemon's peak RSS (VmHWM).

    python3 bench/slow_uploads.py N PORT CONFIG_NAME [SIZE_MIB]

CONFIG_NAME identifies the daemon's process (`pgrep -f`), e.g. the config file's name.
"""
import socket, ssl, threading, time, sys, os
N = int(sys.argv[1]); PORT = int(sys.argv[2]); NAME = sys.argv[3]
SIZE = int(sys.argv[4] if len(sys.argv) > 4 else 62) << 20
ctx = ssl.create_default_context(cafile="certs-example/ca.pem")
ctx.load_cert_chain("certs-example/portal.pem", "certs-example/portal.key")
meta = b'{"leistung":"99115005001000","destination":"05315000"}'
def part(h, body): return b"--B0undary\r\n" + h + b"\r\n\r\n" + body + b"\r\n"
head = part(b'Content-Disposition: form-data; name="metadata"\r\nContent-Type: application/json', meta) + part(b'Content-Disposition: form-data; name="data"\r\nContent-Type: application/xml', b"<a/>")
att_h = b'--B0undary\r\nContent-Disposition: form-data; name="attachment"; filename="scan.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
tail = b"\r\n--B0undary--\r\n"
total = len(head) + len(att_h) + SIZE + len(tail)
results = []
socks = []
def run(i):
    try:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", PORT)), server_hostname="localhost")
        socks.append(s)
        s.settimeout(60)
        s.sendall(b"POST /v1/submissions HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=B0undary\r\nContent-Length: %d\r\n\r\n" % total)
        s.sendall(head + att_h)
        chunk = b"x" * (1 << 20)
        sent = 0
        while sent < SIZE - (1 << 20):
            s.sendall(chunk); sent += len(chunk)
        s.sendall(b"x" * (SIZE - sent - 200))
        results.append("all but 200 bytes sent")
    except Exception as e:
        results.append("cut off: " + type(e).__name__)
ts = [threading.Thread(target=run, args=(i,)) for i in range(N)]
[t.start() for t in ts]
[t.join(timeout=180) for t in ts]
time.sleep(3)
pid = int(os.popen(f"pgrep -f 'serve --config .*{NAME}'").read().split()[0])
st = open(f"/proc/{pid}/status").read()
rss = [l.split() for l in st.splitlines() if l.startswith(("VmRSS", "VmHWM"))]
print(N, "connections:", {r: results.count(r) for r in set(results)}, rss)
