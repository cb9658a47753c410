# The part of slurm.conf every Slurm these scripts start shares (local-slurm.sh on loopback, the
# namespace cluster of scripts/cluster/): no cgroups, no accounting, Open MPI through PMIx, a
# scheduler that starts jobs at once. Sourced; prints to stdout.
slurm_conf_common() {
  cat <<EOC
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
SlurmdParameters=config_overrides
MpiDefault=pmix
ReturnToService=2
KillWait=5
EOC
}
