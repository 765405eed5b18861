#!/bin/sh
ADDR=$(python3 -c 'import json;print(json.load(open("/run/cloud-init/instance-data.json"))["v1"]["local_ipv4"])')
mkdir -p /srv/www && echo "hello from $(hostname) at $ADDR" > /srv/www/index.html
cd /srv/www && nohup python3 -m http.server --bind $ADDR 8080 > /var/log/http.log 2>&1 &
echo started web server
