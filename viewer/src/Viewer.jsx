// The page of `streamsave view`: H5Web on the server's h5grove routes, a bar that says
// whether a writer is recording, and a side panel with the channels (live frame counts),
// an export form and each detector's settings as a tree.
import { App, H5GroveProvider } from '@h5web/app';
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import SidePanel from './SidePanel.jsx';

const API = `${window.location.origin}/api`;
const POLL_MS = 1000;

function exportURL(file) {
  // H5Web's export menu: npy and tiff go through the reader's export on the server
  // (whole frames of the selected slice); json and csv are made in the page.
  return (format, dataset, selection, builtInExporter) => {
    if (format === 'npy' || format === 'tiff') {
      const params = new URLSearchParams({ file, path: dataset.path, format });
      if (selection) params.set('selection', selection);
      return new URL(`${API}/export?${params}`);
    }
    if (builtInExporter) return async () => new Blob([builtInExporter()]);
    return undefined;
  };
}

// The entity H5Web shows, read from its tree (H5Web keeps the selection to itself).
function selectedPath() {
  const item = document.querySelector('.ss-h5web [role=treeitem][aria-selected=true]');
  return (item && item.dataset.path) || '/';
}

function countsOf(summary) {
  return summary ? summary.channels.map((c) => `${c.path}:${c.frames}`).join(';') + `;${summary.writing}` : '';
}

export default function Viewer() {
  const [file, setFile] = useState(null);
  const [summary, setSummary] = useState(null);
  const [error, setError] = useState(null);
  // Bumped when the file changed: H5Web is mounted afresh on the entity it showed, so every
  // view (the plot of the selected entity too) reads the new frames. (Its resetKeys renews
  // the data stores, but a plot already on screen keeps its old shape.)
  const [view, setView] = useState({ version: 0, path: '/' });
  const [panelOpen, setPanelOpen] = useState(true);
  const [follow, setFollow] = useState(true);
  const last = useRef('');
  const getExportURL = useMemo(() => (file ? exportURL(file) : undefined), [file]);

  useEffect(() => {
    fetch(`${API}/served`).then((r) => r.json()).then((r) => setFile(r.file), (e) => setError(String(e)));
  }, []);

  const refresh = useCallback(() => setView((v) => ({ version: v.version + 1, path: selectedPath() })), []);

  const poll = useCallback(async () => {
    if (!file) return;
    try {
      const r = await fetch(`${API}/summary?${new URLSearchParams({ file })}`);
      const body = await r.json();
      if (!r.ok) throw new Error(body.message || r.statusText);
      setSummary(body);
      setError(null);
      const counts = countsOf(body);
      if (last.current && counts !== last.current && follow) refresh();
      last.current = counts;
    } catch (e) {
      setError(String(e.message || e));
    }
  }, [file, follow, refresh]);

  useEffect(() => {
    poll();
    const timer = setInterval(poll, POLL_MS);
    return () => clearInterval(timer);
  }, [poll]);

  if (!file) return <div className="ss-loading">{error || 'Loading…'}</div>;
  const state = summary ? (summary.writing ? 'recording' : summary.live ? 'live' : 'closed') : '…';
  return (
    <div className="ss-page">
      <header className="ss-bar">
        <strong>streamsave view</strong>
        <span className="ss-file">{file}</span>
        <span className={`ss-state ss-${state}`} data-testid="state">{state}</span>
        {error && <span className="ss-error" role="alert">{error}</span>}
        <span className="ss-spacer" />
        <label title="refresh the views when the writer adds frames">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> follow new frames
        </label>
        <button type="button" onClick={refresh}>Refresh</button>
        <button type="button" onClick={() => setPanelOpen((o) => !o)} aria-expanded={panelOpen}>
          {panelOpen ? 'Hide channels' : 'Channels & settings'}
        </button>
      </header>
      <main className="ss-main">
        <div className="ss-h5web">
          <H5GroveProvider key={view.version} url={API} filepath={file} getExportURL={getExportURL}>
            <App sidebarOpen initialPath={view.path} />
          </H5GroveProvider>
        </div>
        {panelOpen && <SidePanel api={API} file={file} summary={summary} />}
      </main>
    </div>
  );
}
