//! A stand-in for the Kubernetes API server (there is no cluster on these machines): serves
//! `GET /api/v1/pods` (list) and `?watch=true` (a stream of events pushed by the test), and
//! records the requests it saw.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex, mpsc},
};

use serde_json::{Value, json};

#[derive(Clone)]
pub struct FakeApi {
    pub port: u16,
    pods: Arc<Mutex<Vec<Value>>>,
    watchers: Arc<Mutex<Vec<mpsc::Sender<String>>>>,
    /// (request line, authorization header) of every request.
    pub seen: Arc<Mutex<Vec<(String, String)>>>,
}

/// A pod object as the API returns it.
pub fn pod(
    uid: &str,
    name: &str,
    ns: &str,
    sa: &str,
    labels: Value,
    container: (&str, &str),
) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels, "resourceVersion": "1"},
        "spec": {"serviceAccountName": sa, "nodeName": "node-1",
                 "containers": [{"name": container.0, "image": "registry.example/agent:1"}]},
        "status": {"containerStatuses": [{
            "name": container.0, "containerID": format!("containerd://{}", container.1),
            "image": "registry.example/agent:1", "imageID": "", "ready": true, "restartCount": 0}]}
    })
}

impl FakeApi {
    pub fn start(pods: Vec<Value>) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let api = Self {
            port: l.local_addr().expect("addr").port(),
            pods: Arc::new(Mutex::new(pods)),
            watchers: Arc::new(Mutex::new(Vec::new())),
            seen: Arc::new(Mutex::new(Vec::new())),
        };
        let a = api.clone();
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let a = a.clone();
                std::thread::spawn(move || a.serve(s));
            }
        });
        api
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Adds a pod: listed from now on, and sent as ADDED to open watches.
    pub fn add(&self, pod: Value) {
        self.pods.lock().expect("lock").push(pod.clone());
        let line = json!({"type": "ADDED", "object": pod}).to_string() + "\n";
        self.watchers
            .lock()
            .expect("lock")
            .retain(|w| w.send(line.clone()).is_ok());
    }

    fn serve(&self, mut s: TcpStream) {
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut first = String::new();
        if r.read_line(&mut first).is_err() {
            return;
        }
        let mut auth = String::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("authorization:") {
                auth = v.trim().to_string();
            }
        }
        self.seen
            .lock()
            .expect("lock")
            .push((first.trim().to_string(), auth));
        if !first.starts_with("GET /api/v1/pods") {
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            return;
        }
        if first.contains("watch=true") {
            let (tx, rx) = mpsc::channel();
            self.watchers.lock().expect("lock").push(tx);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
            );
            for line in rx {
                if s.write_all(line.as_bytes())
                    .and_then(|()| s.flush())
                    .is_err()
                {
                    return;
                }
            }
            return;
        }
        let body = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": *self.pods.lock().expect("lock")}).to_string();
        let _ = s.write_all(
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                .as_bytes(),
        );
    }
}
