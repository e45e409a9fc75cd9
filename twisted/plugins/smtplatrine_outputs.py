from smtplatrine.outputs.elasticsearch import Elasticsearch
from smtplatrine.outputs.hpfeeds import HPFeeds
from smtplatrine.outputs.jsonlines import JSONLines
from smtplatrine.outputs.splunk import Splunk
from smtplatrine.outputs.syslog import Syslog

jsonlines = JSONLines()
syslog = Syslog()
hpfeeds = HPFeeds()
elasticsearch = Elasticsearch()
splunk = Splunk()
