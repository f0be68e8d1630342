"""The task page: server-rendered HTML with a little JavaScript, no build step (read on a projector).

``/`` lists the batches with live progress bars and an upload form that shows the
unified error's message and hints; ``/view/{id}`` shows one batch: counts per
state, the metrics against the thresholds in green or red, failure reasons with
hints, the latest resource sample, and the buttons Resume, Retry failed and
Cancel. Both read the JSON API (the list polls it, the batch page listens on the
WebSocket), so the page shows exactly what a client of the API sees.
Labels are Chinese with the English term, as in the lesson.
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{font:20px/1.45 system-ui,"Noto Sans CJK SC",sans-serif;margin:1.5em auto;max-width:70em;padding:0 1em;color:#222}
h1{font-size:1.6em} table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:.3em .5em;
text-align:left} .bar{background:#eee;height:1em;width:12em;display:inline-block;vertical-align:middle}
.bar i{background:#3a7;display:block;height:100%} .pass{color:#176b2c;font-weight:bold}
.fail{color:#b00020;font-weight:bold} .muted{color:#777} .error{border:2px solid #b00020;padding:.5em;margin:.5em 0}
button{font-size:1em;margin-right:.5em} .state{font-weight:bold}
#curve{width:100%;max-width:40em;height:12em;border:1px solid #ddd;background:#fcfcfc}
#curve polyline{fill:none;stroke:#3a7;stroke-width:2;vector-effect:non-scaling-stroke}
#curve line{stroke-width:2;vector-effect:non-scaling-stroke} #curve line[data-kind=kill]{stroke:#b00020}
#curve line[data-kind=stop]{stroke:#e69500;stroke-dasharray:4 3} #curve line[data-kind=resume]{stroke:#2456c8}
.key-kill{color:#b00020} .key-stop{color:#e69500} .key-resume{color:#2456c8}
"""
STATE_ZH = {"queued": "排队 queued", "running": "运行中 running", "interrupted": "中断 interrupted",
            "completed": "完成 completed", "failed": "失败 failed", "cancelled": "已取消 cancelled"}


def _page(title: str, body: str, script: str) -> str:
    return (f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}<script>const STATE_ZH={_js(STATE_ZH)};{script}</script>"
            "</body></html>")


def _js(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


def _bar(done: int, unique: int) -> str:
    pct = 100 * done / unique if unique else 100
    return f"<span class='bar'><i style='width:{pct:.0f}%'></i></span> {done}/{unique}"


def index_page(batches: list[dict[str, Any]]) -> str:
    """The batches list (newest first) and the upload form."""
    rows = "".join(
        f"<tr id='row-{escape(b['id'])}'><td><a href='/view/{escape(b['id'])}'>{escape(b['id'])}</a><br>"
        f"<span class='muted'>{escape(b['name'])}</span></td><td class='state'>{escape(STATE_ZH[b['state']])}</td>"
        f"<td class='prog'>{_bar(b['completed'], b['unique'])}</td><td>{b['retries']}</td></tr>" for b in batches)
    body = f"""<h1>批处理任务 (batches)</h1>
<form id="upload"><b>上传批次文件 (upload a batch file)</b><br>
<input type="file" name="file" accept=".json,application/json" required>
故障率 (fault rate) <input name="fault_rate" size="4" value="0.03">
并发 (concurrency) <input name="concurrency" size="3" value="8">
延迟 (latency, ms) <input name="latency_ms" size="4" value="10">
<button type="submit">提交 (Submit)</button></form>
<div id="upload-error"></div>
<table><thead><tr><th>批次 (batch)</th><th>状态 (state)</th><th>进度 (progress)</th><th>重试 (retries)</th></tr>
</thead><tbody id="rows">{rows}</tbody></table>
<p class="muted">API: <a href="/docs">/docs</a></p>"""
    script = """
function bar(d,u){const p=u?100*d/u:100;return `<span class='bar'><i style='width:${p.toFixed(0)}%'></i></span> ${d}/${u}`}
function esc(s){return String(s??'').replace(/[&<>'"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;',"'":'&#39;','"':'&quot;'}[c]))}
function showError(e){document.getElementById('upload-error').innerHTML=`<div class="error"><b>${esc(e.code)}</b>: `+
 `${esc(e.message)}<ul>${(e.hints||[]).map(h=>`<li>${esc(h)}</li>`).join('')}</ul></div>`}
async function refresh(){const r=await fetch('/batches?limit=50');if(!r.ok)return;const data=await r.json();
 document.getElementById('rows').innerHTML=data.batches.map(b=>`<tr id="row-${esc(b.id)}"><td><a href="/view/${esc(b.id)}">`+
 `${esc(b.id)}</a><br><span class="muted">${esc(b.name)}</span></td><td class="state">${esc(STATE_ZH[b.state])}</td>`+
 `<td class="prog">${bar(b.completed,b.unique)}</td><td>${b.retries}</td></tr>`).join('')}
document.getElementById('upload').addEventListener('submit',async ev=>{ev.preventDefault();
 const r=await fetch('/batches',{method:'POST',body:new FormData(ev.target)});const data=await r.json();
 if(!r.ok){showError(data.error);return}document.getElementById('upload-error').innerHTML='';refresh()});
setInterval(refresh,1000);"""
    return _page("批处理任务 (batches)", body, script)


#: The live completion curve (completed / unique over wall time) with each pass's end (a kill in red, a
#: clean stop such as Cancel dashed orange) and each resume (blue) marked. Points come from what the page
#: receives (snapshot, progress, actions); the marks also from the passes in the batch's timings, so a page
#: opened late still shows every kill and resume. Plain SVG, drawn by a few lines of script.
CURVE_HTML = """<h2>完成曲线 (completion curve)</h2>
<svg id="curve" viewBox="0 0 1000 100" preserveAspectRatio="none" role="img" aria-label="completion curve">
<polyline id="curve-line" points=""></polyline><g id="curve-marks"></g></svg>
<p class="muted">纵轴 (y): 已完成比例 (completed / unique), 横轴 (x): 时间 (time) ·
<span class="key-kill">▌ 强杀 (kill)</span> · <span class="key-stop">▌ 停止 (stop / cancel)</span> ·
<span class="key-resume">▌ 恢复 (resume)</span></p>"""
CURVE_JS = """const CURVE={points:[],marks:{}};
function curveDraw(){const ts=CURVE.points.map(p=>p[0]).concat(Object.values(CURVE.marks).map(m=>m.t));
 if(!ts.length)return;const t0=Math.min(...ts),span=Math.max(1,Math.max(...ts)-t0),x=t=>(1000*(t-t0)/span).toFixed(1);
 document.getElementById('curve-line').setAttribute('points',CURVE.points.map(p=>`${x(p[0])},${(100-100*p[1]).toFixed(2)}`).join(' '));
 document.getElementById('curve-marks').innerHTML=Object.entries(CURVE.marks).map(([k,m])=>
  `<line data-key="${k}" data-kind="${m.kind}" x1="${x(m.t)}" x2="${x(m.t)}" y1="0" y2="100"><title>${k}</title></line>`).join('')}
function curvePoint(b){const now=Date.now()/1000;const f=b.unique?b.completed/b.unique:1;
 const last=CURVE.points[CURVE.points.length-1];if(!last||last[1]!==f||now-last[0]>1)CURVE.points.push([now,f]);
 ((b.timings||{}).passes||[]).forEach(curveMarkPass);curveDraw()}
function curveMark(key,kind,t){if(!(key in CURVE.marks)){CURVE.marks[key]={kind:kind,t:t};curveDraw()}}
function curveMarkPass(p){if(p.pass_no>1)curveMark('resume-'+p.pass_no,'resume',p.started_at);
 if(p.outcome!=='ok')curveMark('end-'+p.pass_no,p.outcome==='killed'?'kill':'stop',p.started_at+p.duration_s)}
"""


def batch_page(batch: dict[str, Any]) -> str:
    """One batch; the script fills it from the WebSocket's messages."""
    body = f"""<p><a href="/">← 全部批次 (all batches)</a></p>
<h1>批次 (batch) {escape(batch['id'])} <span class="muted">{escape(batch['name'])}</span></h1>
<p>状态 (state): <span id="state" class="state"></span> <span id="reason" class="muted"></span></p>
<p>进度 (progress): <span id="progress"></span> · 吞吐 (throughput) <span id="tput"></span> 文档/分钟 ·
预计剩余 (ETA) <span id="eta"></span> · 重试 (retries) <span id="retries"></span></p>
{CURVE_HTML}
<p><button data-action="resume">恢复 (Resume)</button><button data-action="retry-failed">重试失败 (Retry failed)
</button><button data-action="cancel">取消 (Cancel)</button></p><div id="action-error"></div>
<h2>各状态文档数 (documents per state)</h2><table><tbody id="counts"></tbody></table>
<h2>指标 (metrics) 对照阈值 (thresholds)</h2><table><tbody id="metrics"></tbody></table>
<h2>失败原因 (failure reasons)</h2><table><tbody id="reasons"></tbody></table>
<h2>资源 (resources)</h2><p id="resource" class="muted">—</p>"""
    script = CURVE_JS + f"""const ID={_js(batch['id'])};
function esc(s){{return String(s??'').replace(/[&<>'"]/g,c=>({{'&':'&amp;','<':'&lt;','>':'&gt;',"'":'&#39;','"':'&quot;'}}[c]))}}
const ZH={{pending:'待处理 pending',processing:'处理中 processing',done:'完成 done',degraded:'降级 degraded',
 failed:'失败 failed',rejected:'拒收 rejected'}};
function fmt(c){{if(c.value===null||c.value===undefined)return 'n/a';return c.metric.endsWith('_rate')?
 (100*c.value).toFixed(2)+' %':c.value.toFixed(3)+' s'}}
function show(b){{curvePoint(b);document.getElementById('state').textContent=STATE_ZH[b.state];
 document.getElementById('reason').textContent=b.reason||'';
 document.getElementById('progress').textContent=`${{b.completed}}/${{b.unique}}`;
 document.getElementById('tput').textContent=b.throughput_docs_per_min;
 document.getElementById('eta').textContent=b.eta_s===null?'n/a':b.eta_s+' s';
 document.getElementById('retries').textContent=b.retries;
 document.getElementById('counts').innerHTML=Object.entries(b.counts).map(([k,v])=>`<tr><td>${{ZH[k]}}</td><td>${{v}}</td></tr>`).join('');
 if(b.resource)showResource(b.resource);
 if(b.metrics&&b.metrics.checks)document.getElementById('metrics').innerHTML=b.metrics.checks.map(c=>
  `<tr><td>${{esc(c.label)}}</td><td>${{fmt(c)}}</td><td>${{esc(c.threshold)}}</td><td class="${{c.passed===null?'muted':
  c.passed?'pass':'fail'}}">${{c.passed===null?'未测 (not measured)':c.passed?'达标 PASS':'未达标 FAIL'}}</td></tr>`).join('');
 if(b.failure_reasons)document.getElementById('reasons').innerHTML=b.failure_reasons.map(r=>
  `<tr><td>${{esc(r.reason)}}</td><td>${{r.count}}</td><td>${{esc(r.hint)}}</td></tr>`).join('')}}
function showResource(r){{document.getElementById('resource').textContent=`CPU ${{r.cpu_percent}} % · 内存 (RSS) `+
 `${{(r.rss_bytes/1048576).toFixed(1)}} MB · 打开文件 (open files) ${{r.open_files}} · 磁盘 (disk) `+
 `${{(r.disk_bytes/1048576).toFixed(1)}} MB`}}
function listen(){{const ws=new WebSocket(`${{location.protocol==='https:'?'wss':'ws'}}://${{location.host}}/batches/${{ID}}/events`);
 ws.onmessage=m=>{{const d=JSON.parse(m.data);if(d.batch){{LAST=d.batch.state;show(d.batch)}}
  if(d.type==='resource')showResource(d.sample);if(d.type==='pass')curveMarkPass(d.pass);
  if(d.type==='event'&&d.resume)curveMark('resume-'+d.event.pass,'resume',Date.now()/1000)}};
 ws.onclose=()=>{{SOCKET=null;if(!['completed','failed'].includes(LAST))setTimeout(listen,2000)}};SOCKET=ws}}
let SOCKET=null,LAST=null;
document.querySelectorAll('button[data-action]').forEach(btn=>btn.addEventListener('click',async()=>{{
 const r=await fetch(`/batches/${{ID}}/${{btn.dataset.action}}`,{{method:'POST'}});const d=await r.json();
 const box=document.getElementById('action-error');if(!r.ok){{box.innerHTML=`<div class="error"><b>${{esc(d.error.code)}}</b>: `+
 `${{esc(d.error.message)}} ${{(d.error.hints||[]).map(esc).join(' ')}}</div>`}}else{{box.innerHTML='';show(d);if(!SOCKET)listen()}}}}));
show({_js(batch)});listen();"""
    return _page(f"批次 (batch) {batch['id']}", body, script)
