"""A browser client as ChatGPT-Next-Web calls the gateway: headless Chromium on another origin does a
CORS preflight, then a streaming fetch with an Authorization header, and reads the stream."""
import json

from conftest import USERS, run_in_browser

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
(async () => {
  try {
    const response = await fetch(GATEWAY + '/v1/chat/completions', {
      method: 'POST',
      headers: {'Authorization': 'Bearer ' + KEY, 'Content-Type': 'application/json'},
      body: JSON.stringify({model: 'gpt-4o', stream: true,
                            messages: [{role: 'user', content: 'browser [chunks=5 delay_ms=150]'}]}),
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let text = '', reads = 0, pieces = [];
    while (true) {
      const {done, value} = await reader.read();
      if (done) break;
      reads += 1;
      text += decoder.decode(value, {stream: true});
    }
    for (const line of text.split('\\n')) {
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.choices.length && chunk.choices[0].delta.content) pieces.push(chunk.choices[0].delta.content);
    }
    report({status: response.status, reads, text: pieces.join(''), done: text.trim().endsWith('data: [DONE]')});
  } catch (error) {
    report({error: String(error)});
  }
})();
function report(result) {
  document.getElementById('out').textContent = JSON.stringify(result);
  fetch('/result', {method: 'POST', body: JSON.stringify(result)});  // back to the page's own origin
}
</script></body></html>"""


def test_browser_cors_preflight_and_streaming_fetch(gateway, tmp_path):
    page = PAGE.replace("GATEWAY", json.dumps(gateway.url)).replace("KEY", json.dumps(USERS["alice"]))
    outcome = run_in_browser(page, tmp_path)
    assert outcome.get("status") == 200, outcome
    assert outcome["text"] == "w0 w1 w2 w3 w4 "
    assert outcome["done"]
    assert outcome["reads"] > 1, "the stream arrived in one piece"
    # The preflight was answered by the gateway without a key (logged as an OPTIONS request).
    assert "method=OPTIONS" in gateway.log()
